CREATE TABLE `audit_chain` (
	`id` integer PRIMARY KEY NOT NULL,
	`chain_id` text NOT NULL,
	`created_at` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `audit_checkpoints` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`chain_id` text NOT NULL,
	`seq` integer NOT NULL,
	`hash` text NOT NULL,
	`time` text NOT NULL,
	`signature` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `audit_erasures` (
	`user_hmac` text PRIMARY KEY NOT NULL,
	`erased_at` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `audit_events` (
	`seq` integer PRIMARY KEY NOT NULL,
	`timestamp` text NOT NULL,
	`kind` text NOT NULL,
	`actor` text NOT NULL,
	`details` text NOT NULL,
	`prev_hash` text NOT NULL,
	`hash` text NOT NULL
);
--> statement-breakpoint
ALTER TABLE `audit_records` ADD `salt` text;--> statement-breakpoint
ALTER TABLE `audit_records` ADD `commitment` text;--> statement-breakpoint
ALTER TABLE `audit_records` ADD `prev_hash` text;--> statement-breakpoint
ALTER TABLE `audit_records` ADD `hash` text;