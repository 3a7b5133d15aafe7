"""The training wing: what ``bbcodec train`` runs.

* :mod:`~bbcodec.training.loop`: the training loop (Adam, free bits, binary
  weight clipping, moving average, held-out evaluation, DDP under torchrun);
* :mod:`~bbcodec.training.checkpoints`: checkpoints that resume and export;
* :mod:`~bbcodec.training.data`: the data loaders (folders of images, .npz
  arrays, MNIST idx files), shared with ``bbcodec bench``;
* :mod:`~bbcodec.training.plots`: training curves from the run's log.
"""
