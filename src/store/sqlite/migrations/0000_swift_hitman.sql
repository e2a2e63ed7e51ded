CREATE TABLE `audit_records` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`id` text NOT NULL,
	`timestamp` text NOT NULL,
	`duration_ms` real,
	`ttfb_ms` real,
	`agent_id` text,
	`user_id` text,
	`task_context` text,
	`session_id` text,
	`parent_agent_id` text,
	`trace_id` text,
	`attribution` text NOT NULL,
	`key_id` text,
	`provider` text,
	`endpoint` text NOT NULL,
	`model` text,
	`response_model` text,
	`stream` integer NOT NULL,
	`status` integer,
	`outcome` text,
	`input_tokens` integer,
	`output_tokens` integer,
	`cache_read_tokens` integer,
	`cache_write_tokens` integer,
	`reasoning_tokens` integer,
	`usage_source` text NOT NULL,
	`cost_usd` real,
	`price_source` text,
	`prompt_hash` text,
	`response_hash` text,
	`error_type` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `audit_records_id_unique` ON `audit_records` (`id`);--> statement-breakpoint
CREATE INDEX `audit_records_agent` ON `audit_records` (`agent_id`);--> statement-breakpoint
CREATE INDEX `audit_records_user` ON `audit_records` (`user_id`);--> statement-breakpoint
CREATE INDEX `audit_records_task` ON `audit_records` (`task_context`);