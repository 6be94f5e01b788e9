/**
 * The suite's progress on stderr: a bar redrawn in place on a terminal, plain lines otherwise
 * (CI logs, pipes). Messages printed through log() never tear the bar.
 */
export class Progress {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #started = Date.now();
  #total: number;
  #done = 0;
  #label = '';
  #timer: NodeJS.Timeout | undefined;

  constructor(total: number, out: NodeJS.WriteStream = process.stderr) {
    this.#out = out;
    this.#tty = Boolean(out.isTTY) && process.env.TERM !== 'dumb';
    this.#total = Math.max(1, total);
    // On a terminal the clock keeps moving during long steps.
    if (this.#tty) this.#timer = setInterval(() => this.#draw(), 500).unref();
  }

  /** What is being done now (no step completed). */
  note(label: string): void {
    this.#label = label;
    if (this.#tty) this.#draw();
    else this.#line();
  }

  /** One step done; `label` names the next thing being done. */
  step(label?: string): void {
    this.#done = Math.min(this.#total, this.#done + 1);
    if (label !== undefined) this.#label = label;
    if (this.#tty) this.#draw();
    else this.#line();
  }

  /** Writes results to stdout without tearing the bar on stderr. */
  print(text: string): void {
    if (this.#tty) this.#out.write('\r\x1b[2K');
    process.stdout.write(`${text}\n`);
    this.#draw();
  }

  log(message: string): void {
    if (this.#tty) this.#out.write('\r\x1b[2K');
    this.#out.write(`${message}\n`);
    this.#draw();
  }

  finish(): void {
    clearInterval(this.#timer);
    this.#done = this.#total;
    if (this.#tty) this.#out.write('\r\x1b[2K');
    this.#out.write(`bench: done in ${this.#elapsed()}\n`);
  }

  #elapsed(): string {
    const s = Math.round((Date.now() - this.#started) / 1000);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }

  #percent(): number {
    return Math.floor((this.#done / this.#total) * 100);
  }

  #line(): void {
    this.#out.write(`bench [${String(this.#percent()).padStart(3)}% ${this.#elapsed()}] ${this.#label}\n`);
  }

  #draw(): void {
    if (!this.#tty) return;
    const width = 28;
    const filled = Math.round((this.#done / this.#total) * width);
    const columns = this.#out.columns ?? 100;
    const text = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(this.#percent()).padStart(3)}% ${this.#elapsed()}  ${this.#label}`;
    this.#out.write(`\r\x1b[2K${text.slice(0, columns - 1)}`);
  }
}
