"""Training of the semantic-conditional full-head 3D GAN (BalanceHead §4, PanoHead §3).

One concern per module: params (the params.yaml section), conditioning (labels of G and D per mode),
vicico (negatives), augment (ADA subset), schedule (neural resolution + blur), ema, loss (the phases
of one step), stream (deterministic batches from the packed shards), state (resumable checkpoints),
preemption (signals), distributed (process groups, torchrun relaunch), features (the 'it learns'
distance), fakes (grids), loop (the training loop that ties them together).
"""
