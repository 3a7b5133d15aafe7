"""Run by tests/test_ddp.py under torchrun: a few training steps, then each rank reports its weights."""
import hashlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train import IMAGES, sample_batch  # noqa: E402

from bbcodec.models.presets import preset  # noqa: E402
from bbcodec.training.loop import TrainConfig, train  # noqa: E402

out = Path(sys.argv[1])
cfg = TrainConfig(steps=3, batch_size=4, eval_every=3, checkpoint_every=3, warmup_steps=1, threads=1)
model = train(preset("tiny"), cfg, sample_batch, IMAGES[:8], out / "run")
digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values())).hexdigest()
rank = torch.distributed.get_rank()
(out / f"rank{rank}.txt").write_text(digest)
torch.distributed.destroy_process_group()
