"""Training step of a seq2seq preset (--model, default transformer_small) in PyTorch: tokens/s (target tokens) for bench/train-translation.ts."""
import argparse

import torch

from models import PRESETS, Seq2Seq, add_train_args, report, setup_threads, smoothed_ce, timed_steps

p = argparse.ArgumentParser()
add_train_args(p)
p.add_argument('--threads', type=int, default=2)
a = p.parse_args()
setup_threads(a.threads)

model = Seq2Seq(a.vocab, **PRESETS[a.model]).train()
opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-8)
g = torch.Generator().manual_seed(1)
src = torch.randint(4, a.vocab, (a.batch, a.src_len), generator=g)
tgt = torch.randint(4, a.vocab, (a.batch, a.tgt_len + 1), generator=g)


def step():
    opt.zero_grad(set_to_none=True)
    loss, n = smoothed_ce(model(src, tgt[:, :-1]), tgt[:, 1:], 0.1, 0)
    (loss / n).backward()
    opt.step()


sec = timed_steps(step, a.warmup, a.steps)
report({'tokens_per_s': a.batch * a.tgt_len / sec, 'ms_per_step': sec * 1000})
