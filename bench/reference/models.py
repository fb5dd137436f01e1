"""PyTorch twins of the benchmarked models (same shapes, same work per step), for ratio = ours / pytorch.

Attention is written as the package computes it (docs/ARCHITECTURE.md §1.2 at full rank: per-head factors
concatenated into [d, H*r] projections, QKᵀ/√r, softmax, ·V, output projection), which is the
same arithmetic as a dense multi-head attention. Post-norm blocks (pre-norm with a final LayerNorm
per stack for transformer_small_cpu), biases in attention, fairseq sinusoidal positions and √d
embedding scaling for the seq2seq model (PRESETS: the shapes of src/models/presets.ts and
tasks/translation-config.ts); learned positions, GELU and a tied MLM head for BERT. Loss: label-smoothed cross-entropy over non-pad tokens; optimizer: Adam.
"""
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def add_train_args(p):
    """The training benchmark's work, shared by train_translation.py (CPU) and gpu_cuda.py."""
    p.add_argument('--model', choices=sorted(PRESETS), default='transformer_small')
    p.add_argument('--vocab', type=int, default=8000)
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--src-len', type=int, default=32)
    p.add_argument('--tgt-len', type=int, default=32)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)


def add_decode_args(p, src_len):
    """The beam-search benchmark's work, shared by decode.py (CPU) and gpu_cuda.py."""
    p.add_argument('--sentences', type=int, default=16)
    p.add_argument('--len', type=int, default=20)
    p.add_argument('--beam', type=int, default=5)
    if src_len is not None:
        p.add_argument('--src-len', type=int, default=src_len)


def setup_threads(threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sinusoidal(num, dim):
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    pos = torch.arange(num, dtype=torch.float32)[:, None] * freq[None, :]
    return torch.cat([torch.sin(pos), torch.cos(pos)], dim=1)


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.h, self.r = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, mem, mask=None, cache=None):
        B, T, d = x.shape
        q = self.q(x).view(B, T, self.h, self.r).transpose(1, 2)
        if cache is not None and 'k' in cache and cache.get('static'):
            k, v = cache['k'], cache['v']
        else:
            S = mem.shape[1]
            k = self.k(mem).view(B, S, self.h, self.r).transpose(1, 2)
            v = self.v(mem).view(B, S, self.h, self.r).transpose(1, 2)
            if cache is not None:
                if 'k' in cache and not cache.get('static'):
                    k = torch.cat([cache['k'], k], dim=2)
                    v = torch.cat([cache['v'], v], dim=2)
                cache['k'], cache['v'] = k, v
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.r)
        if mask is not None:
            logits = logits + mask
        ctx = torch.softmax(logits, dim=-1) @ v
        return self.o(ctx.transpose(1, 2).reshape(B, T, d))


class Block(nn.Module):
    def __init__(self, d, heads, ffn, dropout, cross, act, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = Attention(d, heads)
        self.n1 = nn.LayerNorm(d)
        self.cross = Attention(d, heads) if cross else None
        self.n2 = nn.LayerNorm(d) if cross else None
        self.f1, self.f2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.n3 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.act = act

    def residual(self, x, norm, sublayer):
        """x + dropout(sublayer(norm(x))) pre-norm, norm(x + dropout(sublayer(x))) post-norm."""
        if self.norm_first:
            return x + self.drop(sublayer(norm(x)))
        return norm(x + self.drop(sublayer(x)))

    def forward(self, x, self_mask, mem=None, mem_mask=None, cache=None):
        x = self.residual(x, self.n1, lambda h: self.self_attn(h, h, self_mask, None if cache is None else cache['self']))
        if self.cross is not None:
            x = self.residual(x, self.n2, lambda h: self.cross(h, mem, mem_mask, None if cache is None else cache['cross']))
        return self.residual(x, self.n3, lambda h: self.f2(self.act(self.f1(h))))


PRESETS = {
    'transformer_small': dict(d=256, heads=4, ffn=1024, layers=2, dropout=0.2),
    'transformer_base': dict(d=512, heads=8, ffn=2048, layers=6, dropout=0.1),
    # The quickstart's: transformer_small at d 128, pre-norm, no dropout, one joint vocabulary.
    'transformer_small_cpu': dict(d=128, heads=4, ffn=512, layers=2, dropout=0.0, norm_first=True, share=True),
}


class Seq2Seq(nn.Module):
    """Default transformer_small: d 256, 4 heads, FFN 1024, 2+2 layers, post-norm, tied output.
    norm_first: pre-norm blocks plus a final LayerNorm after each stack; share: one embedding for
    source and target (also the output projection)."""

    def __init__(self, vocab, d=256, heads=4, ffn=1024, layers=2, dropout=0.2, pad=0, norm_first=False, share=False):
        super().__init__()
        self.d, self.pad = d, pad
        self.src_emb = nn.Embedding(vocab, d)
        self.tgt_emb = self.src_emb if share else nn.Embedding(vocab, d)
        self.register_buffer('pos', sinusoidal(1024, d))
        self.enc = nn.ModuleList(Block(d, heads, ffn, dropout, False, F.relu, norm_first) for _ in range(layers))
        self.dec = nn.ModuleList(Block(d, heads, ffn, dropout, True, F.relu, norm_first) for _ in range(layers))
        self.enc_norm = nn.LayerNorm(d) if norm_first else nn.Identity()
        self.dec_norm = nn.LayerNorm(d) if norm_first else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def embed(self, emb, ids, offset=0):
        return self.drop(emb(ids) * math.sqrt(self.d) + self.pos[offset:offset + ids.shape[1]])

    def encode(self, src):
        pad_mask = (src == self.pad)[:, None, None, :].float() * -1e9
        x = self.embed(self.src_emb, src)
        for b in self.enc:
            x = b(x, pad_mask)
        return self.enc_norm(x), pad_mask

    def forward(self, src, tgt_in):
        mem, mem_mask = self.encode(src)
        T = tgt_in.shape[1]
        causal = torch.triu(torch.full((T, T), -1e9, device=tgt_in.device), diagonal=1)[None, None]
        y = self.embed(self.tgt_emb, tgt_in)
        for b in self.dec:
            y = b(y, causal, mem, mem_mask)
        return self.dec_norm(y) @ self.tgt_emb.weight.t()

    def decode_step(self, tokens, step, mem, mem_mask, caches):
        y = self.embed(self.tgt_emb, tokens[:, None], offset=step)
        for b, c in zip(self.dec, caches):
            y = b(y, None, mem, mem_mask, c)
        return torch.log_softmax(self.dec_norm(y[:, -1]) @ self.tgt_emb.weight.t(), dim=-1)


class BertMLM(nn.Module):
    """bert_small: d 256, 4 heads, FFN 1024, 4 layers, GELU, learned positions, tied MLM head."""

    def __init__(self, vocab, d=256, heads=4, ffn=1024, layers=4, max_pos=128, dropout=0.1, pad=0):
        super().__init__()
        self.pad = pad
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_pos, d)
        self.emb_norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(Block(d, heads, ffn, dropout, False, F.gelu) for _ in range(layers))
        self.head, self.head_norm = nn.Linear(d, d), nn.LayerNorm(d)
        self.out_bias = nn.Parameter(torch.zeros(vocab))
        self.drop = nn.Dropout(dropout)

    def forward(self, ids, positions):
        B, T = ids.shape
        x = self.drop(self.emb_norm(self.tok(ids) + self.pos.weight[:T]))
        mask = (ids == self.pad)[:, None, None, :].float() * -1e9
        for b in self.blocks:
            x = b(x, mask)
        h = torch.gather(x, 1, positions[:, :, None].expand(-1, -1, x.shape[-1]))
        h = self.head_norm(F.gelu(self.head(h)))
        return h @ self.tok.weight.t() + self.out_bias


@torch.no_grad()
def beam_search(model, src, length, beam, vocab):
    """Beam search where every hypothesis runs exactly `length` tokens + EOS (ours with minLen = maxLen):
    per step one decoder pass over the new token, log-softmax, a top-k over beam x vocabulary and a
    reorder of the self-attention caches. Runs on src's device."""
    N, K, dev = src.shape[0], beam, src.device
    mem, mem_mask = model.encode(src)
    mem = mem.repeat_interleave(K, dim=0)
    mem_mask = mem_mask.repeat_interleave(K, dim=0)
    caches = [{'self': {}, 'cross': {'static': True}} for _ in model.dec]
    tokens = torch.full((N * K,), 1, dtype=torch.long, device=dev)
    scores = torch.zeros(N, K, device=dev)
    scores[:, 1:] = float('-inf')
    for step in range(length + 1):
        logp = model.decode_step(tokens, step, mem, mem_mask, caches)  # [N*K, V]
        if step < length:
            logp[:, 2] = float('-inf')  # EOS banned before the length is reached
        else:
            eos = logp[:, 2].clone()
            logp.fill_(float('-inf'))
            logp[:, 2] = eos  # and forced at it
        total = (scores.reshape(N * K, 1) + logp).reshape(N, K * vocab)
        scores, idx = total.topk(K, dim=1)
        parents = (idx // vocab + torch.arange(N, device=dev)[:, None] * K).reshape(-1)
        tokens = (idx % vocab).reshape(-1)
        for c in caches:
            c['self']['k'] = c['self']['k'].index_select(0, parents)
            c['self']['v'] = c['self']['v'].index_select(0, parents)
    return scores


def smoothed_ce(logits, targets, eps, pad):
    """Sum over non-pad tokens of (1-eps)·nll + eps·mean_v(-log p): logsumexp + gather, like ours."""
    V = logits.shape[-1]
    flat, t = logits.reshape(-1, V), targets.reshape(-1)
    lse = torch.logsumexp(flat, dim=-1)
    nll = lse - flat.gather(1, t.clamp(min=0)[:, None])[:, 0]
    smooth = lse - flat.mean(dim=-1)
    keep = (t != pad).float()
    return (((1 - eps) * nll + eps * smooth) * keep).sum(), int(keep.sum().item())


def report(result):
    result['peak_rss_mib'] = peak_rss_mib()
    result['threads'] = torch.get_num_threads()
    result['torch'] = torch.__version__
    result['openblas_coretype'] = os.environ.get('OPENBLAS_CORETYPE', '')
    print(json.dumps(result))
    sys.stdout.flush()


def timed_steps(step, warmup, steps):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]
