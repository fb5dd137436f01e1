/**
 * Training progress for people (a cli-progress bar on a terminal, plain lines otherwise) and for
 * programs (metrics.jsonl, one JSON object per log step / validation; see docs/ARCHITECTURE.md §4.7).
 */
import { SingleBar } from 'cli-progress';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

export interface MetricsRecord {
  type: 'train' | 'valid';
  step: number;
  epoch: number;
  /** Seconds since the start of training (summed across resumes). */
  time: number;
  loss: number;
  [key: string]: number | string;
}

export class MetricsWriter {
  constructor(readonly file: string) {}

  append(record: MetricsRecord): void {
    appendFileSync(this.file, JSON.stringify(record) + '\n');
  }

  /**
   * On resume: drops records past the checkpoint's step, so the file matches an uninterrupted run;
   * with `dropValidAtStep`, also the valid record of `step` itself (its validation is re-run).
   */
  truncateAfter(step: number, dropValidAtStep = false): void {
    if (!existsSync(this.file)) return;
    const kept = readFileSync(this.file, 'utf8')
      .split('\n')
      .filter((line) => {
        if (!line.trim()) return false;
        try {
          const record = JSON.parse(line) as MetricsRecord;
          return record.step < step || (record.step === step && !(dropValidAtStep && record.type === 'valid'));
        } catch {
          return false; // a line cut by a crash
        }
      });
    writeFileSync(this.file, kept.map((l) => l + '\n').join(''));
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/** A run's last validation loss for its summary line; NaN (no validation ran) reads as such, never 'NaN'. */
export function formatValidLoss(loss: number): string {
  return Number.isFinite(loss) ? `valid loss ${loss.toFixed(3)}` : 'no validation yet';
}

export interface ProgressUpdate {
  step: number;
  /** Total updates, if known. */
  total: number | null;
  loss: number;
  lr: number;
  tokensPerSecond: number;
  etaSeconds: number | null;
}

export type ProgressMode = 'auto' | 'bar' | 'lines' | 'none';

export function formatProgressLine(u: ProgressUpdate): string {
  const total = u.total ? `/${u.total}` : '';
  const eta = u.etaSeconds === null ? '' : ` eta ${formatDuration(u.etaSeconds)}`;
  return `step ${u.step}${total} loss ${u.loss.toFixed(3)} lr ${u.lr.toExponential(1)} tok/s ${Math.round(u.tokensPerSecond)}${eta}`;
}

export class ProgressReporter {
  private readonly mode: 'bar' | 'lines' | 'none';
  private bar: SingleBar | null = null;

  constructor(
    mode: ProgressMode = 'auto',
    private readonly stream: NodeJS.WriteStream | NodeJS.WritableStream = process.stderr,
  ) {
    this.mode = mode === 'auto' ? ((stream as NodeJS.WriteStream).isTTY ? 'bar' : 'lines') : mode;
  }

  update(u: ProgressUpdate): void {
    if (this.mode === 'none') return;
    if (this.mode === 'lines') {
      this.stream.write(formatProgressLine(u) + '\n');
      return;
    }
    const payload = {
      loss: u.loss.toFixed(3),
      lr: u.lr.toExponential(1),
      tps: Math.round(u.tokensPerSecond),
      remaining: u.etaSeconds === null ? '?' : formatDuration(u.etaSeconds),
    };
    if (!this.bar) {
      // With only a time budget the total is unknown: no bar, no ETA.
      const format =
        u.total === null ? 'step {value} loss {loss} lr {lr} tok/s {tps}' : 'step {value}/{total} [{bar}] loss {loss} lr {lr} tok/s {tps} eta {remaining}';
      this.bar = new SingleBar({
        format,
        stream: this.stream as NodeJS.WritableStream,
        hideCursor: true,
      });
      this.bar.start(u.total ?? 0, u.step, payload);
    } else {
      if (u.total !== null) this.bar.setTotal(u.total);
      this.bar.update(u.step, payload);
    }
  }

  /** A message (validation, warnings) that must not be overwritten by the bar. */
  message(line: string): void {
    if (this.mode === 'none') return;
    if (this.bar) {
      this.bar.stop();
      this.bar = null;
    }
    this.stream.write(line + '\n');
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
