"""Beam-5 decoding with an incremental key/value cache in PyTorch: sentences/s for bench/decode.ts.

Every hypothesis runs exactly --len tokens + EOS (as ours with minLen = maxLen), so both sides do
the same number of decoder steps: per step one decoder pass over the new token, log-softmax, a
top-k over beam x vocabulary, and a reorder of the self-attention caches.
"""
import argparse
import time

import torch

from models import PRESETS, Seq2Seq, add_decode_args, beam_search, report, setup_threads

p = argparse.ArgumentParser()
p.add_argument('--model', choices=sorted(PRESETS), default='transformer_small')
p.add_argument('--vocab', type=int, default=8000)
add_decode_args(p, src_len=24)
p.add_argument('--threads', type=int, default=2)
a = p.parse_args()
setup_threads(a.threads)

model = Seq2Seq(a.vocab, **PRESETS[a.model]).eval()
g = torch.Generator().manual_seed(1)
src = torch.randint(4, a.vocab, (a.sentences, a.src_len), generator=g)


def run():
    return beam_search(model, src, a.len, a.beam, a.vocab)


run()
t0 = time.perf_counter()
run()
sec = time.perf_counter() - t0
report({'sentences_per_s': a.sentences / sec, 'seconds': sec})
