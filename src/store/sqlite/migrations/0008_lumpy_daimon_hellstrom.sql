ALTER TABLE `audit_records` ADD `consent_id` text;--> statement-breakpoint
ALTER TABLE `audit_records` ADD `purpose` text;--> statement-breakpoint
ALTER TABLE `audit_records` ADD `lawful_basis` text;--> statement-breakpoint
ALTER TABLE `audit_records` ADD `consent_source` text;--> statement-breakpoint
CREATE INDEX `audit_records_consent` ON `audit_records` (`consent_id`);