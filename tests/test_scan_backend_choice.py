"""``auto`` by measurement: the backend the timer finds fastest at the network's own scans runs every ToM layer."""

import torch

from nnunetv2_segresmamba.network import SegResMamba, SegResMambaConfig, TriOrientedMamba
from nnunetv2_segresmamba.network.scan_shapes import scan_shapes
from nnunetv2_segresmamba.ssm.auto_select import fastest_backend


def test_the_fastest_candidate_runs_every_tom_layer():
    config = SegResMambaConfig(in_channels=1, num_classes=3, widths=(8, 8, 8, 8), scan_backend="auto")
    network = SegResMamba(config)
    timed = []

    def timer(shapes, backend, device):
        timed.append((backend, len(shapes)))
        return {"cuda": 3.0, "triton": 2.0}[backend]

    shapes = scan_shapes(network.config, (64, 64, 64), 2)
    choice, times = fastest_backend(shapes, ["cuda", "triton"], torch.device("cpu"), timer)
    network.use_scan_backend(choice)
    toms = [m for m in network.modules() if isinstance(m, TriOrientedMamba)]
    assert choice == "triton" and times == {"cuda": 3.0, "triton": 2.0}
    assert timed == [("cuda", len(toms)), ("triton", len(toms))]  # one scan per ToM layer, both backends
    assert network.config.scan_backend == "triton" and {m.scan_backend for m in toms} == {"triton"}


def test_scan_shapes_follow_the_batch_and_patch():
    config = SegResMambaConfig(in_channels=1, num_classes=3, widths=(8, 8, 8, 8))
    small, large = scan_shapes(config, (64, 64, 64), 1), scan_shapes(config, (128, 128, 128), 3)
    assert len(small) == len(large) > 0
    assert all(b.batch == 3 and b.length == 8 * a.length and b.channels == a.channels for a, b in zip(small, large))


def test_a_tie_keeps_the_first_candidate():
    assert fastest_backend([], ["cuda", "triton"], torch.device("cpu"), lambda s, b, d: 1.0)[0] == "cuda"
