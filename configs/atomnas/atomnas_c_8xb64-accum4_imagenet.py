# AtomNAS-C on 8 GPUs: 8 x 64 images x 4 accumulated iterations = 2048 per
# optimizer step, the paper's total batch, so lr, EMA decay, alpha_hat and
# the lambda ramp are the paper's, per optimizer step (the penalty, EMA and
# shrink hooks advance per step, and a removal waits for a step's end).
# bash tools/dist_train.sh configs/atomnas/atomnas_c_8xb64-accum4_imagenet.py 8
_base_ = ['./atomnas_c_imagenet.py']
optim_wrapper = dict(accumulative_counts=4)
