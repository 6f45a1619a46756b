"""The first-run setup of an account: which steps an admin has done or skipped, and what they created."""
