ALTER TABLE `audit_records` ADD `tags` text;--> statement-breakpoint
ALTER TABLE `audit_records` ADD `personal_tags` text;--> statement-breakpoint
ALTER TABLE `audit_records` ADD `hash_version` integer DEFAULT 2 NOT NULL;--> statement-breakpoint
ALTER TABLE `proxy_keys` ADD `tags` text;