import { AppProcess } from './app-process.js';

/**
 * A center in its own process (`node apps/center/dist/main.js`, as in production), so a test can
 * kill it without a goodbye: no checkpoint saved, no lease let go. `stop()` is its ordered stop.
 */
export class CenterProcess extends AppProcess {
  constructor() {
    super('center', 'PUSH_CENTER', 20_000);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The sum of a metric's series that carry every label given (0 when there is none). */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const text = await fetch(`${this.url}/metrics`).then((r) => r.text());
    let sum = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name} `) && !line.startsWith(`${name}{`)) continue;
      if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  }
}
