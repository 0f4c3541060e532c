//! Executes one Plan through `cloud`, writing intents and outcomes to the journal. Not built yet (issue 6).
