"""The reward kinds an objective's `reward` node selects: each module here declares its schema (CONFIG,
stored in the ConfigStore as `objective/reward/<module>_schema`) and how to build the reward (`build`)."""
