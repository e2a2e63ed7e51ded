CREATE TABLE `consents` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text,
	`agents` text NOT NULL,
	`purpose` text NOT NULL,
	`task_pattern` text,
	`lawful_basis` text NOT NULL,
	`granted_at` text NOT NULL,
	`granted_by` text NOT NULL,
	`expires_at` text,
	`revoked_at` text,
	`revoked_by` text,
	`expiry_recorded_at` text,
	`erased_at` text
);
--> statement-breakpoint
CREATE INDEX `consents_user` ON `consents` (`user_id`,`granted_at`);