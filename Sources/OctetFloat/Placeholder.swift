import OctetCore
