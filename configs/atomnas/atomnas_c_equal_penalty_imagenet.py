# Table 2 baseline: AtomNAS-C's search with every atom penalised equally
# (no FLOPs awareness): c_i = 1 for all atoms.
_base_ = ['./atomnas_c_imagenet.py']
optim_wrapper = dict(penalty=dict(equal_penalty=True))
