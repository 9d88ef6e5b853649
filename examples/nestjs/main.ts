/**
 * A NestJS app served by tsgun from TypeScript, no build step:
 *
 *   npx tsgun -w 2 'examples/nestjs/main:create()'
 *
 * The factory returns the Nest application object; tsgun calls init(), serves its HTTP
 * adapter's instance (Express here) and calls close() when the worker drains. Because
 * tsconfig.json sets emitDecoratorMetadata, tsgun compiles with SWC (@swc/core).
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';

export async function create() {
  return NestFactory.create(AppModule, { logger: ['error', 'warn'] });
}
