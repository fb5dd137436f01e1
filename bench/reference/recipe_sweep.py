"""Recipe sweep behind the quickstart preset (docs/quickstart-recipe.md), not a benchmark.

A PyTorch twin of the package's translation model (joint vocabulary, shared + tied embeddings,
post-norm or pre-norm, sinusoidal positions, √d scale, label-smoothed CE, Adam β 0.9/0.98,
clip-norm) is trained on the default corpus for a fixed budget of *target tokens* — the quantity
our CPU engine processes at a measured rate per minute — and scored by greedy test BLEU
(sacrebleu). Because the budget is counted in tokens, not seconds, many recipes can be compared
quickly on any machine (it was run on a borrowed GPU) and the winner transferred to the CPU
engine, where it is then measured for real (`npm start`).

  python3 bench/reference/recipe_sweep.py CONFIGS.json PART NPARTS OUT.jsonl
(runs configs PART, PART+NPARTS, ...; see docs/recipe-sweep/run-sweep2.sh)
"""
import json, math, os, random, sys, time
import torch, torch.nn as nn, torch.nn.functional as F
import sentencepiece as spm
try:
    import sacrebleu
except ImportError:
    sacrebleu = None
sys.path.insert(0, 'bench/reference')
from models import sinusoidal

def cache_dir():
    """The user cache folder, as src/text/cache-dir.ts finds it."""
    explicit = os.environ.get('FT_CACHE_DIR') or os.environ.get('FT_DATA_CACHE')
    if explicit: return os.path.abspath(explicit)
    xdg = os.environ.get('XDG_CACHE_HOME')
    if xdg and os.path.isabs(xdg): return os.path.join(xdg, 'factorized-transformer')
    return os.path.join(os.path.expanduser('~'), '.cache', 'factorized-transformer')

# The default corpus split into files by any CLI command (src/text/defaults.ts: <cache>/corpora/).
CACHE = os.path.join(cache_dir(), 'corpora', 'web-rv1909-64e26f9b1f26')
PAD, UNK, BOS, EOS = 0, 1, 2, 3

def load(split, sp):
    en = open(f'{CACHE}/{split}.en').read().split('\n')
    es = open(f'{CACHE}/{split}.es').read().split('\n')
    if en[-1] == '' and es[-1] == '': en, es = en[:-1], es[:-1]
    return en, es, sp.encode(en), sp.encode(es)

class Attn(nn.Module):
    def __init__(s, d, h):
        super().__init__(); s.h, s.r = h, d // h
        s.q, s.k, s.v, s.o = (nn.Linear(d, d) for _ in range(4))
    def forward(s, x, mem, mask):
        B, T, d = x.shape; S = mem.shape[1]
        q = s.q(x).view(B, T, s.h, s.r).transpose(1, 2)
        k = s.k(mem).view(B, S, s.h, s.r).transpose(1, 2)
        v = s.v(mem).view(B, S, s.h, s.r).transpose(1, 2)
        lg = (q @ k.transpose(-1, -2)) / math.sqrt(s.r)
        lg = lg.masked_fill(~mask, -1e9)
        a = torch.softmax(lg, -1) @ v
        return s.o(a.transpose(1, 2).reshape(B, T, d))

class Block(nn.Module):
    def __init__(s, d, h, f, p, cross, pre):
        super().__init__(); s.pre = pre
        s.sa, s.n1 = Attn(d, h), nn.LayerNorm(d)
        s.ca, s.n2 = (Attn(d, h), nn.LayerNorm(d)) if cross else (None, None)
        s.f1, s.f2, s.n3 = nn.Linear(d, f), nn.Linear(f, d), nn.LayerNorm(d)
        s.drop = nn.Dropout(p)
    def sub(s, x, n, fn):
        if s.pre: return x + s.drop(fn(n(x)))
        return n(x + s.drop(fn(x)))
    def forward(s, x, m, mem=None, mm=None):
        x = s.sub(x, s.n1, lambda z: s.sa(z, z, m))
        if s.ca is not None: x = s.sub(x, s.n2, lambda z: s.ca(z, mem, mm))
        return s.sub(x, s.n3, lambda z: s.f2(F.relu(s.f1(z))))

class Model(nn.Module):
    def __init__(s, V, d=256, h=4, f=1024, L=2, p=0.2, pre=False):
        super().__init__(); s.d, s.pre = d, pre
        s.emb = nn.Embedding(V, d, padding_idx=PAD); nn.init.normal_(s.emb.weight, 0, d ** -0.5); s.emb.weight.data[PAD] = 0
        s.register_buffer('pos', sinusoidal(1024, d))
        s.enc = nn.ModuleList(Block(d, h, f, p, False, pre) for _ in range(L))
        s.dec = nn.ModuleList(Block(d, h, f, p, True, pre) for _ in range(L))
        s.ne, s.nd = (nn.LayerNorm(d), nn.LayerNorm(d)) if pre else (nn.Identity(), nn.Identity())
        s.drop = nn.Dropout(p)
        for m in s.modules():
            if isinstance(m, nn.Linear): nn.init.xavier_uniform_(m.weight); nn.init.zeros_(m.bias)
    def embed(s, ids): return s.drop(s.emb(ids) * math.sqrt(s.d) + s.pos[:ids.shape[1]])
    def encode(s, src):
        mm = (src != PAD)[:, None, None, :]
        x = s.embed(src)
        for b in s.enc: x = b(x, mm)
        return s.ne(x), mm
    def decode(s, y_in, mem, mm):
        T = y_in.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=y_in.device).tril()[None, None]
        y = s.embed(y_in)
        for b in s.dec: y = b(y, causal, mem, mm)
        return s.nd(y) @ s.emb.weight.t()

def pad_batch(seqs, dev):
    T = max(len(x) for x in seqs); out = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, x in enumerate(seqs): out[i, :len(x)] = torch.tensor(x)
    return out.to(dev)

def batches(src, tgt, max_tokens, rng, max_len):
    idx = [i for i in range(len(src)) if len(src[i]) <= max_len and len(tgt[i]) <= max_len]
    rng.shuffle(idx)
    idx.sort(key=lambda i: (len(tgt[i]) + 1, len(src[i]) + 1))  # stable: random within a length
    out, cur, mx = [], [], 0
    for i in idx:
        m = max(mx, len(src[i]) + 1, len(tgt[i]) + 1)
        if cur and m * (len(cur) + 1) > max_tokens:
            out.append(cur); cur, m = [], max(len(src[i]) + 1, len(tgt[i]) + 1)
        cur.append(i); mx = m
    if cur: out.append(cur)
    rng.shuffle(out); return out

def run(cfg, data, dev):
    torch.manual_seed(cfg.get('seed', 1)); rng = random.Random(cfg.get('seed', 1))
    sp, (tr_en, tr_es, tr_s, tr_t), (te_en, te_es, te_s, te_t) = data
    V = sp.get_piece_size()
    model = Model(V, d=cfg.get('d', 256), f=cfg.get('ffn', 1024), L=cfg.get('layers', 2), p=cfg['dropout'], pre=cfg.get('pre', False)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg['lr'], betas=(0.9, 0.98), eps=1e-8, weight_decay=0)
    budget, warm, lr = cfg['budget'], cfg['warmup'], cfg['lr']
    est_steps = budget / (cfg['max_tokens'] * 0.65)
    seen, step, t0 = 0, 0, time.time()
    losses = []
    while seen < budget:
        for b in batches(tr_s, tr_t, cfg['max_tokens'], rng, cfg.get('max_len', 128)):
            if seen >= budget: break
            step += 1
            if cfg.get('sched', 'isqrt') == 'isqrt':
                cur = 1e-7 + (lr - 1e-7) * step / warm if step <= warm else lr * math.sqrt(warm / step)
            else:  # linear warmup then linear decay to 0 at the (estimated) end of the budget
                frac = seen / budget
                cur = lr * min(step / warm, 1.0) * max(0.0, 1 - frac) if step > warm else lr * step / warm
            for g in opt.param_groups: g['lr'] = cur
            src = pad_batch([tr_s[i] + [EOS] for i in b], dev)
            tin = pad_batch([[BOS] + tr_t[i] for i in b], dev)
            tout = pad_batch([tr_t[i] + [EOS] for i in b], dev)
            model.train()
            mem, mm = model.encode(src)
            logits = model.decode(tin, mem, mm)
            n = (tout != PAD).sum()
            loss = F.cross_entropy(logits.reshape(-1, V), tout.reshape(-1), ignore_index=PAD, label_smoothing=cfg['ls'], reduction='sum') / n
            opt.zero_grad(); loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.get('clip', 0.1))
            opt.step(); seen += int(n); losses.append(float(loss))
    # greedy decode test
    model.eval(); hyps = [None] * len(te_s)
    order = sorted(range(len(te_s)), key=lambda i: len(te_s[i]))
    with torch.no_grad():
        for k in range(0, len(order), 128):
            ids = order[k:k + 128]
            src = pad_batch([te_s[i] + [EOS] for i in ids], dev)
            mem, mm = model.encode(src)
            maxlen = int(1.2 * src.shape[1] + 10)
            ys = torch.full((len(ids), 1), BOS, device=dev); done = torch.zeros(len(ids), dtype=torch.bool, device=dev)
            for _ in range(maxlen):
                nxt = model.decode(ys, mem, mm)[:, -1].argmax(-1)
                nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
                ys = torch.cat([ys, nxt[:, None]], 1); done |= nxt == EOS
                if done.all(): break
            for j, i in enumerate(ids):
                out = []
                for t in ys[j, 1:].tolist():
                    if t in (EOS, PAD): break
                    out.append(t)
                hyps[i] = sp.decode(out)
    if sacrebleu is None: return {**cfg, 'steps': step, 'sample': hyps[:2]}
    bleu = sacrebleu.corpus_bleu(hyps, [te_es])
    return {**cfg, 'steps': step, 'seen': seen, 'final_train_loss': sum(losses[-20:]) / 20, 'bleu': round(bleu.score, 2),
            'bp': round(bleu.bp, 3), 'ratio': round(bleu.sys_len / bleu.ref_len, 3), 'sec': round(time.time() - t0, 1), 'sample': hyps[:2]}

if __name__ == '__main__':
    cfgs = json.load(open(sys.argv[1])); part, nparts = int(sys.argv[2]), int(sys.argv[3]); outp = sys.argv[4]
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    cache = {}
    def get_data(v):
        if v not in cache:
            mf = 'data/web-rv1909.en-es.spm.model' if v == 8000 else f'/tmp/spm{v}.model'
            sp = spm.SentencePieceProcessor(model_file=mf)
            cache[v] = (sp, load('train', sp), load('test', sp))
        return cache[v]
    data = get_data(8000)
    if dev == 'cpu': data = (sp, data[1], tuple(x[:40] for x in data[2]))
    with open(outp, 'a') as f:
        for cfg in cfgs[part::nparts]:
            try: r = run(cfg, get_data(cfg.get('vocab', 8000)), dev)
            except Exception as e: r = {**cfg, 'error': repr(e)}
            f.write(json.dumps(r) + '\n'); f.flush(); print(json.dumps(r), flush=True)
