# AtomNAS-C on one GPU: 64 images x 32 accumulated iterations = 2048 per
# optimizer step, the paper's total batch. Activation checkpointing (with_cp)
# keeps the supernet's activations for 64 images to a fraction of the ~15 GB
# they take in fp32 (benchmarks/bench_memory.py), at the cost of recomputing
# them in the backward. Expect ~32x the wall time of the 32-GPU recipe.
# python tools/train.py configs/atomnas/atomnas_c_1xb64-accum32_imagenet.py --amp
_base_ = ['./atomnas_c_imagenet.py']
model = dict(backbone=dict(with_cp=True))
optim_wrapper = dict(accumulative_counts=32)
