// The suite's listener (suite.mjs) on node:http for PM2 cluster mode, listening on $PORT:
//   PORT=8000 pm2 start bench/apps/pm2-suite.cjs -i 2
'use strict';
/* global require */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const http = require('node:http');

import('./suite.mjs').then(({ default: app }) => {
  const server = http.createServer(app);
  server.listen(Number(process.env.PORT), '127.0.0.1');
  process.on('SIGINT', () => server.close(() => process.exit(0)));
});
