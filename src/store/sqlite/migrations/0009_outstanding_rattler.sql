DROP INDEX `audit_records_agent`;--> statement-breakpoint
DROP INDEX `audit_records_user`;--> statement-breakpoint
DROP INDEX `audit_records_task`;--> statement-breakpoint
DROP INDEX `audit_records_time`;--> statement-breakpoint
CREATE INDEX `audit_records_time_task` ON `audit_records` (`timestamp`,`task_context`,`input_tokens`,`output_tokens`,`cache_read_tokens`,`cache_write_tokens`,`cache_write_1h_tokens`,`reasoning_tokens`,`cost_nano_usd`,`usage_source`);