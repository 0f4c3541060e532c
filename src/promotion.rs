//! Promotion between environments: gates, change windows, pipeline state. Not built yet (issue 8).
