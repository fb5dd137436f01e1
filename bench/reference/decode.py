"""Beam-5 decoding with an incremental key/value cache in PyTorch: sentences/s for bench/decode.ts.

Every hypothesis runs exactly --len tokens + EOS (as ours with minLen = maxLen), so both sides do
the same number of decoder steps: per step one decoder pass over the new token, log-softmax, a
top-k over beam x vocabulary, and a reorder of the self-attention caches.
"""
import argparse
import time

import torch

from models import Seq2Seq, report, setup_threads

p = argparse.ArgumentParser()
p.add_argument('--vocab', type=int, default=8000)
p.add_argument('--sentences', type=int, default=16)
p.add_argument('--src-len', type=int, default=24)
p.add_argument('--len', type=int, default=20)
p.add_argument('--beam', type=int, default=5)
p.add_argument('--threads', type=int, default=2)
a = p.parse_args()
setup_threads(a.threads)

model = Seq2Seq(a.vocab).eval()
g = torch.Generator().manual_seed(1)
src = torch.randint(4, a.vocab, (a.sentences, a.src_len), generator=g)


@torch.no_grad()
def beam_search():
    N, K = a.sentences, a.beam
    mem, mem_mask = model.encode(src)
    mem = mem.repeat_interleave(K, dim=0)
    mem_mask = mem_mask.repeat_interleave(K, dim=0)
    caches = [{'self': {}, 'cross': {'static': True}} for _ in model.dec]
    tokens = torch.full((N * K,), 1, dtype=torch.long)
    scores = torch.zeros(N, K)
    scores[:, 1:] = float('-inf')
    for step in range(a.len + 1):
        logp = model.decode_step(tokens, step, mem, mem_mask, caches)  # [N*K, V]
        if step < a.len:
            logp[:, 2] = float('-inf')  # EOS banned before the length is reached
        else:
            eos = logp[:, 2].clone()
            logp.fill_(float('-inf'))
            logp[:, 2] = eos  # and forced at it
        total = (scores.reshape(N * K, 1) + logp).reshape(N, K * a.vocab)
        scores, idx = total.topk(K, dim=1)
        parents = (idx // a.vocab + torch.arange(N)[:, None] * K).reshape(-1)
        tokens = (idx % a.vocab).reshape(-1)
        for c in caches:
            c['self']['k'] = c['self']['k'].index_select(0, parents)
            c['self']['v'] = c['self']['v'].index_select(0, parents)
    return scores


beam_search()
t0 = time.perf_counter()
beam_search()
sec = time.perf_counter() - t0
report({'sentences_per_s': a.sentences / sec, 'seconds': sec})
