CREATE TABLE `proxy_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`hash` text NOT NULL,
	`agents` text NOT NULL,
	`users` text,
	`tier` text,
	`created_at` text NOT NULL,
	`expires_at` text,
	`revoked_at` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `proxy_keys_hash_unique` ON `proxy_keys` (`hash`);--> statement-breakpoint
ALTER TABLE `audit_records` ADD `delegation` text;