-- A failed email is kept as sent-ready bytes (lettre file transport with its
-- envelope) under out/spool/; `deliveries retry` resends exactly that message.
ALTER TABLE deliveries ADD COLUMN spool TEXT;
