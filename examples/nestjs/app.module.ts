import { Body, Controller, Get, Module, Param, ParseIntPipe, Post, type OnApplicationShutdown } from '@nestjs/common';
import { CatsService, type Cat } from './cats.service.js';

@Controller()
export class AppController {
  // Constructor injection: needs the decorator metadata tsgun's SWC loader emits.
  constructor(private readonly cats: CatsService) {}

  @Get()
  hello(): string {
    return `Hello from tsgun! Worker ${process.pid} served this with NestJS.\nTry /api/cats, /api/cats/1, or POST {"name":"..."} to /api/cats.\n`;
  }

  @Get('api/cats')
  list(): { cats: Cat[]; worker: number } {
    return { cats: this.cats.all(), worker: process.pid };
  }

  @Get('api/cats/:id')
  one(@Param('id', ParseIntPipe) id: number): Cat {
    return this.cats.one(id);
  }

  @Post('api/cats')
  add(@Body() body: { name?: string }): Cat {
    return this.cats.add(body.name ?? 'nameless');
  }
}

@Module({ controllers: [AppController], providers: [CatsService] })
export class AppModule implements OnApplicationShutdown {
  // Runs when tsgun drains the worker: tsgun calls the Nest app's close().
  onApplicationShutdown(): void {
    console.log(`worker ${process.pid}: Nest app closed`);
  }
}
