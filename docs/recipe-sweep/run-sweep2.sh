#!/bin/bash
# The second sweep as it ran (8 processes x 2 CPU threads on one GPU machine, from the repo root,
# with the default corpus already split into the user cache folder by any CLI command: $FT_CACHE_DIR,
# else $XDG_CACHE_HOME/factorized-transformer, else ~/.cache/factorized-transformer; see
# src/text/cache-dir.ts). $OUT = result folder.
export OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
CACHE_DIR=${FT_CACHE_DIR:-${FT_DATA_CACHE:-}}
if [ -z "$CACHE_DIR" ]; then
  case "${XDG_CACHE_HOME:-}" in /*) CACHE_DIR=$XDG_CACHE_HOME/factorized-transformer ;; *) CACHE_DIR=$HOME/.cache/factorized-transformer ;; esac
fi
C=$CACHE_DIR/corpora/web-rv1909-64e26f9b1f26
cat $C/train.en $C/train.es > /tmp/joint.txt
for v in 2000 4000; do
  python3 -c "import sentencepiece as s; s.SentencePieceTrainer.train(input='/tmp/joint.txt', model_prefix='/tmp/spm$v', vocab_size=$v, model_type='unigram', character_coverage=1.0, pad_id=0, unk_id=1, bos_id=2, eos_id=3, user_defined_symbols=['<mask>'], minloglevel=2)" &
done; wait; ls /tmp/spm*
for i in 0 1 2 3 4 5 6 7; do
  python3 bench/reference/recipe_sweep.py docs/recipe-sweep/sweep2-configs.json $i 8 $OUT/r$i.jsonl > $OUT/log$i.txt 2>&1 &
done
wait
cat $OUT/r*.jsonl > $OUT/all.jsonl; rm $OUT/r*.jsonl
python3 -c "
import sys,json
rs=[json.loads(l) for l in open('$OUT/all.jsonl')]
for r in sorted(rs,key=lambda r:-r.get('bleu',-1)): print(r['name'], r.get('bleu'), r.get('ratio'), r.get('steps'), round(r.get('final_train_loss',0),3), r.get('sec'), r.get('error',''), r.get('sample',[''])[0][:80])
"
