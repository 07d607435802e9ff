import { AppProcess } from './app-process.js';

/** A coordinator in its own process, so it can be killed (SIGKILL) in the middle of a delivery. */
export class CoordinatorProcess extends AppProcess {
  constructor() {
    super('coordinator', 'PUSH_COORDINATOR');
  }
}
