"""Budget-safe outbound call campaign dispatcher."""
