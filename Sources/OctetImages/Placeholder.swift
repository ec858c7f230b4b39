// Placeholder: filled by the image helper.
