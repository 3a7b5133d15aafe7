"""Two CPU processes under torchrun (gloo) stay in step; rank 0 alone writes."""
import subprocess
import sys
from pathlib import Path


def test_two_processes_stay_in_step(tmp_path):
    worker = Path(__file__).resolve().parent / "ddp_worker.py"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(worker), str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert ranks[0] == ranks[1], "the two processes ended with different weights"
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 1  # rank 0 alone logged
