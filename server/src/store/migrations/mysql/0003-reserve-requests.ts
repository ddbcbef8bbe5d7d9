/**
 * MySQL/MariaDB migration 0003: the Reserve requests a retry may repeat (ReserveRequest.request_id).
 * Numbered alike in store/migrations/sqlite/0003-reserve-requests.ts. Never edit once merged.
 *
 * A row names the jobs one Reserve leased: their ids, and the batch prefix of their lease tokens
 * (a token is prefix + '-' + id), so a retry finds the leases still held by primary key. Rows go
 * once their lease length has passed (the lease sweep deletes them); the table stays small.
 */
import type { MigrationInterface, QueryRunner } from "typeorm";

export class ReserveRequests0000000000003 implements MigrationInterface {
  name = "ReserveRequests0000000000003";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE IF NOT EXISTS \`~populus_reserve_requests\` (
      table_name VARCHAR(64) CHARACTER SET ascii NOT NULL,
      request_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
      lease_prefix CHAR(32) CHARACTER SET ascii NOT NULL,
      job_ids MEDIUMTEXT CHARACTER SET ascii NOT NULL,
      lease_expire_time BIGINT NOT NULL,
      PRIMARY KEY (table_name, request_id),
      KEY lease_expire_idx (lease_expire_time)
    ) ENGINE=InnoDB`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query("DROP TABLE IF EXISTS `~populus_reserve_requests`");
  }
}
