"""Installing on GPU machines: offline bundles and a mamba-ssm build for the local GPU only.

    nnunetv2-segresmamba-install bundle DIR --python-version 3.12 [--existing-torch 2.11.0]   (with PyPI)
    sh DIR/install.sh                                                                (on the offline node)
    nnunetv2-segresmamba-install build-mamba                                         (any GPU machine)
    nnunetv2-segresmamba-install verify

(or ``python -m nnunetv2_segresmamba.install ...``). ``bundle.py`` collects the wheels of the package and
of everything it needs for a target Python and platform, plus mamba-ssm's source; ``node.py`` installs
such a bundle with pip and no index; ``mamba_build.py`` builds mamba-ssm's CUDA extension for the GPU
architectures asked for instead of the nine its setup.py lists; ``verify.py`` checks an installation.
Nothing here imports torch at module level, so that ``bundle`` runs where torch is not installed.
"""
