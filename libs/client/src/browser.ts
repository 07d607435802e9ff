/**
 * Entry of the `<script>` bundle (dist/push-client.min.js): one global, `PushClient`, the class,
 * with the error class and the protocol constants hung on it.
 */
import { CLOSE, REFUSED, PushClient, PushClientError } from './index.js';

const api = Object.assign(PushClient, { PushClient, PushClientError, CLOSE, REFUSED });
(globalThis as { PushClient?: typeof api }).PushClient = api;
