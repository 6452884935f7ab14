-- Scenarios and quorums (issue 5).
ALTER TABLE intents ADD COLUMN workflow TEXT;                    -- on a scenario's intent: its steps and runs
ALTER TABLE intents ADD COLUMN step_of TEXT;                     -- on a step's intent: {workflow_id, step_id}
ALTER TABLE intents ADD COLUMN votes TEXT NOT NULL DEFAULT '[]'; -- votes cast on a quorum task
