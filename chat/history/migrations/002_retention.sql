-- Retention (CHAT_HISTORY_TTL): the sweep deletes messages by age and then
-- threads left without messages; these indexes keep both deletes from
-- scanning the tables.
CREATE INDEX chat_messages_created_at ON chat_messages (created_at);
CREATE INDEX chat_threads_updated_at ON chat_threads (updated_at);

---- create above / drop below ----

DROP INDEX chat_threads_updated_at;
DROP INDEX chat_messages_created_at;
