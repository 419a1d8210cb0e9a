"""The REST API (MongooseIM's client API): one Klein app per resource group."""
