import { AppProcess } from './app-process.js';

/** An edge in its own process, so it can be killed without a goodbye (no close frames, no presence cleanup). */
export class EdgeProcess extends AppProcess {
  constructor() {
    super('edge', 'PUSH_EDGE');
  }

  override start(env: Record<string, string>, workers = 1): Promise<void> {
    return super.start({ ...env, PUSH_EDGE_WORKERS: String(workers) });
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }
}
