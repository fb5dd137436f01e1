"""PyTorch on CUDA for bench/gpu.ts: training tokens/s or beam-5 decode sentences/s of
transformer_small / transformer_base with the same model shapes, batch and work as ours on webgpu.

Eager float32 (PyTorch's defaults: no TF32 matmuls, no AMP, no compile), timed with
torch.cuda.synchronize() around each measured step. `--device cpu` runs the same code without a GPU
(for checking this script); a missing CUDA device is an error on the last stderr line.
"""
import argparse
import sys
import time

import torch

from models import PRESETS, Seq2Seq, add_decode_args, add_train_args, beam_search, report, smoothed_ce, timed_steps

p = argparse.ArgumentParser()
p.add_argument('--task', choices=['train', 'decode'], required=True)
p.add_argument('--device', default='cuda')
add_train_args(p)  # --src-len serves both tasks here
add_decode_args(p, src_len=None)
a = p.parse_args()

if a.device.startswith('cuda') and not torch.cuda.is_available():
    sys.exit(f'CUDA is not available to PyTorch {torch.__version__} (torch.cuda.is_available() is False)')
dev = torch.device(a.device)
torch.manual_seed(0)


def sync():
    if dev.type == 'cuda':
        torch.cuda.synchronize(dev)


model = Seq2Seq(a.vocab, **PRESETS[a.model]).to(dev)
g = torch.Generator().manual_seed(1)
info = {'device': torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu', 'torch': torch.__version__}

if a.task == 'train':
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-8)
    src = torch.randint(4, a.vocab, (a.batch, a.src_len), generator=g).to(dev)
    tgt = torch.randint(4, a.vocab, (a.batch, a.tgt_len + 1), generator=g).to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        loss, n = smoothed_ce(model(src, tgt[:, :-1]), tgt[:, 1:], 0.1, 0)
        (loss / n).backward()
        opt.step()
        sync()

    sec = timed_steps(step, a.warmup, a.steps)
    report({'tokens_per_s': a.batch * a.tgt_len / sec, 'ms_per_step': sec * 1000, **info})
else:
    model.eval()
    src = torch.randint(4, a.vocab, (a.sentences, a.src_len), generator=g).to(dev)

    def run():
        scores = beam_search(model, src, a.len, a.beam, a.vocab)
        sync()
        return scores

    run()
    t0 = time.perf_counter()
    run()
    sec = time.perf_counter() - t0
    report({'sentences_per_s': a.sentences / sec, 'seconds': sec, **info})
