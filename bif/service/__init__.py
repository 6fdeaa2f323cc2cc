"""What the app calls: background jobs and their cost estimates."""
