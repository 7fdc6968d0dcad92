-- A message whose endpoint was deleted before it got through is `dropped`, not `failed`: the partner removed
-- the address, so nobody is left to deliver to, and the audit's undelivered_webhook (given up or late)
-- counts only messages a partner still waits for. Its attempt row stays `failed` with the reason.
-- depends: 0018_previews

ALTER TABLE webhooks.messages DROP CONSTRAINT messages_status_check;
ALTER TABLE webhooks.messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('pending', 'delivered', 'failed', 'dropped'));
