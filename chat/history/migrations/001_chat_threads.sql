-- Threads and their messages. seq numbers a thread's messages from 1 in
-- order; chat_threads.message_count hands them out under the row lock that the
-- upsert in Append takes, so concurrent appends to one thread never interleave.
CREATE TABLE chat_threads (
    thread_id     text PRIMARY KEY,
    message_count integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat_messages (
    thread_id  text NOT NULL REFERENCES chat_threads (thread_id) ON DELETE CASCADE,
    seq        integer NOT NULL,
    role       text NOT NULL CHECK (role IN ('user', 'assistant')),
    content    text NOT NULL,
    escalated  boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, seq)
);

---- create above / drop below ----

DROP TABLE chat_messages;
DROP TABLE chat_threads;
