ALTER TABLE `audit_records` ADD `cache_write_1h_tokens` integer;--> statement-breakpoint
ALTER TABLE `audit_records` ADD `cost_nano_usd` integer;