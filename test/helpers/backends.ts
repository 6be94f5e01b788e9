import { Database } from '../../db/Database.ts';
import { createTestDatabase, type TestDatabase } from '../../kit/postgres.ts';

/**
 * The two database backends, one code path: each database test runs once on a real Postgres
 * (a fresh database of its own) and once on an in-memory PGlite.
 */
export interface Backend {
  name: 'postgres' | 'pglite';
  open(): Promise<{ db: Database; close(): Promise<void> }>;
}

export const BACKENDS: Backend[] = [
  {
    name: 'postgres',
    async open() {
      const testDb: TestDatabase = await createTestDatabase();
      const db = Database.open({ url: testDb.url });
      return {
        db,
        async close() {
          await db.close();
          await testDb.drop();
        },
      };
    },
  },
  {
    name: 'pglite',
    async open() {
      const db = Database.open({});
      return { db, close: () => db.close() };
    },
  },
];
