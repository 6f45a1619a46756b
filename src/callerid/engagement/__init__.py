"""Engagement: Call Me Back, surveys and their answers, CMB/UF log exports."""
