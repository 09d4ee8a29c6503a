"""`tools/train.py --strategy=multi_worker`: two real worker processes on localhost (TF_CONFIG),
training one model together with MultiWorkerMirroredStrategy, as users scale out past one
machine. Both must form the cluster (2 replicas in sync) and end with identical weights."""

import json
import socket

import h5py
import numpy as np
import pytest

from tests.tools_runner import start_tool


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def weights(path):
    with h5py.File(path, "r") as f:
        names = []
        f["model_weights"].visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        return {name: f["model_weights"][name][()] for name in names}


@pytest.mark.slow
def test_two_workers_train_one_model(tmp_path):
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(start_tool(
            "tools/train.py", "--model=efficientnet_lite0", "--model_option=width_coefficient=0.5",
            "--model_option=depth_coefficient=0.34", "--model_option=head_filters=128", "--data=digits",
            "--image_size=32", "--batch_size=32", "--epochs=0.25", "--eval_limit=64", "--strategy=multi_worker",
            f"--output={tmp_path / f'worker{index}.h5'}", log=tmp_path / f"worker{index}.log", env=env,
        ))  # fmt: skip
    try:
        codes = [worker.wait(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    logs = [(tmp_path / f"worker{index}.log").read_text() for index in range(2)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    for log in logs:
        assert "strategy multi_worker: 2 replicas in sync" in log, log[-2000:]
    first, second = (weights(tmp_path / f"worker{index}.h5") for index in range(2))
    assert first.keys() == second.keys() and len(first) > 100
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    histories = [json.loads((tmp_path / f"worker{index}.json").read_text())["history"] for index in range(2)]
    assert histories[0] == histories[1]
