import { Injectable, NotFoundException } from '@nestjs/common';

export interface Cat {
  id: number;
  name: string;
}

/** An injectable service: each worker has its own instance (state is per process). */
@Injectable()
export class CatsService {
  private readonly cats: Cat[] = [{ id: 1, name: 'Tom' }];

  all(): Cat[] {
    return this.cats;
  }

  one(id: number): Cat {
    const cat = this.cats.find((c) => c.id === id);
    if (!cat) throw new NotFoundException(`no cat ${id}`);
    return cat;
  }

  add(name: string): Cat {
    const cat = { id: this.cats.length + 1, name };
    this.cats.push(cat);
    return cat;
  }
}
