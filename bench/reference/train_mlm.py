"""Training step of bert_small (masked LM) in PyTorch: tokens/s (input tokens) for bench/train-mlm.ts."""
import argparse

import torch

from models import BertMLM, report, setup_threads, smoothed_ce, timed_steps

p = argparse.ArgumentParser()
p.add_argument('--vocab', type=int, default=8000)
p.add_argument('--batch', type=int, default=32)
p.add_argument('--seq-len', type=int, default=128)
p.add_argument('--masked', type=int, default=20)
p.add_argument('--steps', type=int, default=5)
p.add_argument('--warmup', type=int, default=2)
p.add_argument('--dropout', type=float, default=0.1)
p.add_argument('--threads', type=int, default=2)
a = p.parse_args()
setup_threads(a.threads)

model = BertMLM(a.vocab, max_pos=max(128, a.seq_len), dropout=a.dropout).train()
opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
g = torch.Generator().manual_seed(1)
ids = torch.randint(4, a.vocab, (a.batch, a.seq_len), generator=g)
positions = torch.stack([torch.randperm(a.seq_len, generator=g)[:a.masked] for _ in range(a.batch)])
labels = torch.randint(4, a.vocab, (a.batch, a.masked), generator=g)


def step():
    opt.zero_grad(set_to_none=True)
    loss, n = smoothed_ce(model(ids, positions), labels, 0.0, 0)
    (loss / n).backward()
    opt.step()


sec = timed_steps(step, a.warmup, a.steps)
report({'tokens_per_s': a.batch * a.seq_len / sec, 'ms_per_step': sec * 1000})
