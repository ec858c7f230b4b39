@_exported import OctetCore
