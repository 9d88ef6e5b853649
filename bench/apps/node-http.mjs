// One bare node:http process serving the listener of suite.mjs: PORT=8000 node bench/apps/node-http.mjs
import http from 'node:http';
import app from './suite.mjs';

http.createServer(app).listen(Number(process.env.PORT ?? 8000), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
