/**
 * Entry of the `<script>` bundle with multi-app sessions (dist/push-client-apps.min.js): the same
 * global `PushClient` as push-client.min.js, whose `attach()` works (docs/sdk.md).
 */
import './browser.js';
import './app-session.js';
