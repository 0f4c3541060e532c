//! Unit tests for the planner rules.
